/**
 * Run a command with a real registry on 127.0.0.1 for its lifetime:
 * `bun scripts/with-registry.ts -- CMD ARGS…`. The command sees the registry's
 * `host:port` in `OCICACHE_TEST_REGISTRY`; its exit code is passed on.
 */
import { startRegistry } from "../tests/helpers/registry.ts";

const args = Bun.argv.slice(2);
const command = args[0] === "--" ? args.slice(1) : args;
if (command.length === 0) {
  console.error("usage: bun scripts/with-registry.ts -- CMD [ARGS…]");
  process.exit(2);
}
const registry = await startRegistry();
console.error(`with-registry: docker-registry on ${registry.host}`);
const child = Bun.spawn(command, {
  env: { ...process.env, OCICACHE_TEST_REGISTRY: registry.host },
  stdio: ["inherit", "inherit", "inherit"],
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
const code = await child.exited;
await registry.stop();
process.exit(code);
