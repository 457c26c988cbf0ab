/**
 * Push a sample unikernel image into a registry:
 * `bun scripts/push-sample.ts URL REPO TAG [spec|kraftkit] [KERNEL_MIB] [INITRD_MIB]`.
 * Prints the reference.
 */
import { pushSampleImage } from "../tests/helpers/images.ts";

const [url, repo, tag, format = "spec", kernelMiB = "4", initrdMiB = "32"] = Bun.argv.slice(2);
if (url === undefined || repo === undefined || tag === undefined || (format !== "spec" && format !== "kraftkit")) {
  console.error("usage: bun scripts/push-sample.ts URL REPO TAG [spec|kraftkit] [KERNEL_MIB] [INITRD_MIB]");
  process.exit(2);
}
const image = await pushSampleImage(url, repo, tag, {
  format,
  kernelBytes: Number(kernelMiB) * 1024 * 1024,
  initrdBytes: Number(initrdMiB) * 1024 * 1024,
  romBytes: [256 * 1024],
});
console.log(image.ref);
