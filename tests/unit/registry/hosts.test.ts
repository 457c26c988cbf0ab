import { describe, expect, test } from "bun:test";
import { canonicalRegistry, isLoopback } from "../../../lib/oci/host.ts";
import { endpointsFor } from "../../../lib/registry/hosts.ts";

describe("endpointsFor()", () => {
  test("mirrors come first, in order, then the origin; loopback hosts speak plain HTTP", () => {
    const endpoints = endpointsFor("127.0.0.1:5000", {
      mirrors: ["mirror.example"],
      registries: { "127.0.0.1:5000": { mirrors: [{ host: "127.0.0.1:6000", capabilities: ["pull"] }] } },
    });
    expect(endpoints.map((e) => [e.host, e.apiUrl, e.mirror, [...e.capabilities]])).toEqual([
      ["127.0.0.1:6000", "http://127.0.0.1:6000/v2", true, ["pull"]],
      ["mirror.example", "https://mirror.example/v2", true, ["pull", "resolve"]],
      ["127.0.0.1:5000", "http://127.0.0.1:5000/v2", false, ["pull", "resolve"]],
    ]);
  });

  test("Docker Hub is reached at registry-1.docker.io; insecure hosts and mirror paths are honoured", () => {
    expect(endpointsFor("docker.io")[0]!.apiUrl).toBe("https://registry-1.docker.io/v2");
    expect(endpointsFor("registry.lan:5000", { insecureRegistries: ["registry.lan:5000"] })[0]!.apiUrl).toBe(
      "http://registry.lan:5000/v2",
    );
    const harbor = endpointsFor("docker.io", {
      registries: { "docker.io": { mirrors: [{ host: "harbor.lan", path: "/v2/hub/" }] } },
    });
    expect(harbor[0]!.apiUrl).toBe("https://harbor.lan/v2/hub");
  });

  test("credentials configured for a host stay with that host", () => {
    const endpoints = endpointsFor("registry.example", {
      registries: { "registry.example": { username: "u", password: "p", mirrors: [{ host: "mirror.example" }] } },
    });
    expect(endpoints.map((e) => [e.host, e.credentials])).toEqual([
      ["mirror.example", undefined],
      ["registry.example", { username: "u", password: "p" }],
    ]);
  });
});

describe("hosts", () => {
  test("Docker Hub's names fold into docker.io; loopback hosts are told apart", () => {
    expect(["index.docker.io", "registry-1.docker.io", "docker.io"].map(canonicalRegistry)).toEqual(
      Array(3).fill("docker.io"),
    );
    expect(["localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000"].filter((h) => !isLoopback(h))).toEqual([]);
    expect(["10.0.0.1:5000", "registry.example", "localhost.example"].filter(isLoopback)).toEqual([]);
  });
});
