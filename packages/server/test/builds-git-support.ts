/**
 * Scratch git repositories served on 127.0.0.1 for the git layer's tests: bare repos under a temp
 * dir, served by `git http-backend` (smart HTTP, as GitHub and GitLab speak it) behind a tiny
 * node http server that counts the requests. Nothing leaves this machine.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";

export interface GitServer {
  /** `http://127.0.0.1:<port>/` */
  url: string;
  root: string;
  requests: number;
  /** A new bare repo `<name>.git` with one commit of `files` on `main`; answers its URL. */
  create(name: string, files: Record<string, string>): Promise<string>;
  /** Another commit of `files` on `branch` (default main); answers its id. */
  commit(name: string, files: Record<string, string>, branch?: string): Promise<string>;
  head(name: string, branch?: string): string;
  close(): Promise<void>;
}

/** git with no config of this machine's, so the test repos are the same everywhere. */
function git(args: string[], cwd?: string): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: "/nonexistent", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null", GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" },
  }).trim();
}

export async function startGitServer(): Promise<GitServer> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-git-"));
  const server = http.createServer((req, res) => {
    state.requests++;
    const u = new URL(req.url ?? "/", "http://x");
    const cgi = spawn("git", ["http-backend"], {
      env: { PATH: process.env.PATH, GIT_PROJECT_ROOT: root, GIT_HTTP_EXPORT_ALL: "1", PATH_INFO: decodeURIComponent(u.pathname), QUERY_STRING: u.search.slice(1), REQUEST_METHOD: req.method ?? "GET", CONTENT_TYPE: req.headers["content-type"] ?? "", REMOTE_ADDR: "127.0.0.1", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let started = false;
    cgi.stdout.on("data", (b: Buffer) => {
      if (started) return void res.write(b);
      head = Buffer.concat([head, b]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      started = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const [k, ...v] = line.split(":");
        if (k?.toLowerCase() === "status") status = Number(v.join(":").trim().split(" ")[0]);
        else if (k) res.setHeader(k, v.join(":").trim());
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.on("close", () => res.end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const write = async (work: string, files: Record<string, string>) => {
    for (const [f, content] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(work, f)), { recursive: true });
      await fs.writeFile(path.join(work, f), content);
    }
  };
  const state: GitServer = {
    url,
    root,
    requests: 0,
    async create(name, files) {
      const bare = path.join(root, `${name}.git`);
      git(["init", "-q", "--bare", "-b", "main", bare]);
      const work = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-git-work-"));
      try {
        git(["init", "-q", "-b", "main", work]);
        await write(work, files);
        git(["add", "-A"], work);
        git(["commit", "-q", "-m", "first"], work);
        git(["push", "-q", bare, "main"], work);
      } finally {
        await fs.rm(work, { recursive: true, force: true });
      }
      return `${url}${name}.git`;
    },
    async commit(name, files, branch = "main") {
      const bare = path.join(root, `${name}.git`);
      const work = await fs.mkdtemp(path.join(os.tmpdir(), "capsule-git-work-"));
      try {
        git(["clone", "-q", bare, work]);
        git(["checkout", "-q", "-B", branch], work);
        await write(work, files);
        git(["add", "-A"], work);
        git(["commit", "-q", "-m", `change on ${branch}`], work);
        git(["push", "-q", "origin", branch], work);
        return git(["rev-parse", "HEAD"], work);
      } finally {
        await fs.rm(work, { recursive: true, force: true });
      }
    },
    head(name, branch = "main") {
      return git(["--git-dir", path.join(root, `${name}.git`), "rev-parse", branch]);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await fs.rm(root, { recursive: true, force: true });
    },
  };
  return state;
}

/** A 127.0.0.1 port nothing listens on (bound, then closed). */
export async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
