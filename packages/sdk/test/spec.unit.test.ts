/**
 * `VmSpec` serializes to the same wire spec as the official freestyle@0.1.63 client's `VmSpec`
 * for the same builder calls (so both clients hit the same cached snapshot), without a server:
 * both clients' requests are captured by their fetch.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as freestyle from "freestyle";
import { Capsule, VmSpec } from "@capsule/sdk";

/** The official client's runtime exports; its published types leave out VmSpec and snapshots.ensure. */
const official = freestyle as unknown as {
  VmSpec: new () => Builder;
  Freestyle: new (o: { apiKey: string; baseUrl: string; fetch: typeof globalThis.fetch }) => { vms: { snapshots: { ensure(o: { spec: Builder }): Promise<unknown> } } };
};

const ANSWER = { snapshotId: "sn-1", buildId: "bld-1", templateHash: "h", cached: true };

/** The JSON body of the one POST a client call makes. */
async function captured(call: (fetch: typeof globalThis.fetch) => Promise<unknown>): Promise<unknown> {
  const bodies: unknown[] = [];
  const fetch = (async (_url: string | URL | Request, init?: RequestInit) => {
    if (init?.method === "POST") bodies.push(JSON.parse(String(init.body)));
    return new Response(JSON.stringify(ANSWER), { status: 200, headers: { "content-type": "application/json" } });
  }) as typeof globalThis.fetch;
  await call(fetch);
  assert.equal(bodies.length, 1);
  return bodies[0];
}

type Builder = {
  aptDeps(...d: string[]): Builder;
  additionalFiles(f: Record<string, { content: string; encoding?: "utf-8" | "base64"; executable?: boolean }>): Builder;
  runCommands(...c: string[]): Builder;
  waitFor(c: string, o?: { intervalSeconds?: number }): Builder;
  systemdService(s: { name: string; exec?: string[]; bash?: string; mode?: "oneshot" | "service"; after?: string[] }): Builder;
  users(u: Array<{ name: string }>): Builder;
  groups(g: Array<{ name: string }>): Builder;
  workdir(p: string): Builder;
  discriminator(d: string): Builder;
  repo(url: string, path: string): Builder;
  snapshot(): Builder;
};

/** Two layers with every field the server builds. */
function describeSpec(s: Builder): Builder {
  return s
    .groups([{ name: "devs" }])
    .users([{ name: "dev" }])
    .aptDeps("jq")
    .additionalFiles({ "/etc/motd": { content: "hi" } })
    .runCommands("echo one > /one", "echo two > /two")
    .discriminator("d1")
    .snapshot()
    .runCommands("echo three > /three")
    .waitFor("test -f /three", { intervalSeconds: 1 })
    .systemdService({ name: "web", bash: "exec python3 -m http.server 8000", after: ["net"] })
    .systemdService({ name: "tick", exec: ["sleep infinity"] })
    .repo("https://git.example.com/team/app.git", "/srv/app")
    .repo("https://git.example.com/team/lib.git", "/srv/lib")
    .workdir("/srv/app");
}

describe("VmSpec", () => {
  it("serializes like the official client's VmSpec, layer for layer", async () => {
    const theirs = await captured((fetch) => new official.Freestyle({ apiKey: "k", baseUrl: "http://capsule.test", fetch }).vms.snapshots.ensure({ spec: describeSpec(new official.VmSpec()) }));
    const ours = await captured((fetch) => new Capsule({ apiUrl: "http://capsule.test", apiKey: "k", fetch }).snapshots.ensure({ spec: describeSpec(new VmSpec() as unknown as Builder) as unknown as VmSpec }));
    assert.deepEqual(ours, theirs);
    const spec = (ours as { spec: { snapshot: { systemd: { services: Array<{ name: string; requires?: string[] }> } } } }).spec;
    assert.deepEqual(spec.snapshot.systemd.services.map((s) => [s.name, s.requires]), [
      ["freestyle-run-command-1", undefined],
      ["freestyle-run-command-2", ["freestyle-run-command-1.service"]],
    ]);
  });

  it("fromJSON takes the wire shape with bash services and runCommands", () => {
    const fromJson = VmSpec.fromJSON({ aptDeps: ["jq"], runCommands: ["echo a"], systemd: { services: [{ name: "w", bash: "sleep 1" }] }, snapshot: { workdir: "/w" } }).toJSON();
    const built = new VmSpec().workdir("/w").snapshot().aptDeps("jq").systemdService({ name: "w", bash: "sleep 1" }).runCommands("echo a").toJSON();
    assert.deepEqual(JSON.parse(JSON.stringify(fromJson)), JSON.parse(JSON.stringify(built)));
    assert.throws(() => new VmSpec().systemdService({ name: "x" }).toJSON(), /needs exec or bash/);
  });

  it("repo() and gitUser() give the layer's git, a rev only when asked for", () => {
    const spec = new VmSpec().repo("https://git.example.com/a.git", "/srv/a").repo("https://git.example.com/b.git", "/srv/b", "v1.2").gitUser({ name: "Dana", email: "dana@example.com" });
    const json = spec.toJSON();
    assert.deepEqual(json.git, {
      config: { user: { name: "Dana", email: "dana@example.com" } },
      repos: [
        { repo: "https://git.example.com/a.git", path: "/srv/a" },
        { repo: "https://git.example.com/b.git", path: "/srv/b", rev: "v1.2" },
      ],
    });
    spec.repo("https://git.example.com/c.git", "/srv/c");
    assert.equal(json.git?.repos.length, 2, "a serialized spec does not change with the builder");
  });
});
