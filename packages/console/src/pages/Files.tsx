/** A small file browser over the files API: list a directory, download a file, upload one. */
import { useCallback, useEffect, useState, type ChangeEvent } from "react";
import { api, filePath, fromBase64, toBase64, type DirEntry, type FileContent } from "../api";
import { href } from "../router";

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function parent(dir: string): string {
  const p = dir.replace(/\/+$/, "").split("/").slice(0, -1).join("/");
  return p === "" ? "/" : p;
}

export function FilesPage({ vmId, path }: { vmId: string; path: string }) {
  const [entries, setEntries] = useState<DirEntry[]>();
  const [error, setError] = useState<string>();
  const [flash, setFlash] = useState<string>();
  const [busy, setBusy] = useState(false);

  const load = useCallback(() => {
    api<{ files?: DirEntry[] } & Partial<FileContent>>("GET", filePath(vmId, path)).then(
      (r) => {
        setError(undefined);
        if (!r.files) {
          setError(`${path} is a file`);
          setEntries([]);
          return;
        }
        setEntries([...r.files].sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === "directory" ? -1 : 1)));
      },
      (e: unknown) => {
        setEntries([]);
        setError(e instanceof Error ? e.message : String(e));
      },
    );
  }, [vmId, path]);
  useEffect(load, [load]);

  const download = async (name: string) => {
    try {
      const r = await api<{ content: string }>("GET", filePath(vmId, join(path, name)));
      const url = URL.createObjectURL(new Blob([fromBase64(r.content)], { type: "application/octet-stream" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  const upload = async (e: ChangeEvent<HTMLInputElement>) => {
    const files = [...(e.target.files ?? [])];
    e.target.value = "";
    if (files.length === 0) return;
    setBusy(true);
    try {
      for (const f of files) {
        const content = toBase64(new Uint8Array(await f.arrayBuffer()));
        await api("PUT", filePath(vmId, join(path, f.name)), { content, encoding: "base64" });
      }
      setFlash(`Uploaded ${files.map((f) => f.name).join(", ")} to ${path}`);
      load();
    } catch (err) {
      setError(`Upload failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <div className="title-row">
        <h2>
          Files · <code>{vmId}</code>
        </h2>
        <a href={href(["vms", vmId, "terminal"])}>Terminal</a>
      </div>
      <div className="card row files-bar">
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            const p = new FormData(e.currentTarget).get("path");
            if (typeof p === "string" && p.startsWith("/")) window.location.hash = href(["vms", vmId, "files"], { path: p });
          }}
        >
          <input name="path" defaultValue={path} key={path} size={40} aria-label="path" data-testid="files-path" />
          <button type="submit">Go</button>
        </form>
        <span className="spacer" />
        <label className="button">
          {busy ? "Uploading…" : "Upload files"}
          <input type="file" multiple hidden onChange={(e) => void upload(e)} data-testid="upload" />
        </label>
      </div>
      {flash && (
        <p className="flash" data-testid="flash">
          {flash}
        </p>
      )}
      {error && <p className="error">{error}</p>}
      <table data-testid="file-table">
        <tbody>
          {path !== "/" && (
            <tr>
              <td>
                <a href={href(["vms", vmId, "files"], { path: parent(path) })}>../</a>
              </td>
              <td />
            </tr>
          )}
          {entries?.map((f) => (
            <tr key={f.name} data-file={f.name}>
              <td>
                {f.kind === "directory" ? (
                  <a href={href(["vms", vmId, "files"], { path: join(path, f.name) })}>{f.name}/</a>
                ) : (
                  <span>{f.name}</span>
                )}
              </td>
              <td className="actions">{f.kind === "file" && <button onClick={() => void download(f.name)}>Download</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
