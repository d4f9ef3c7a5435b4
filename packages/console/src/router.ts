/** Hash routing (`#/vms`, `#/vms/<id>/terminal?session=…`): the server serves one static page. */
import { useEffect, useState } from "react";

export interface Route {
  parts: string[];
  query: URLSearchParams;
}

export function parseHash(hash = window.location.hash): Route {
  const raw = hash.replace(/^#/, "") || "/vms";
  const [p = "", q = ""] = raw.split("?", 2);
  return { parts: p.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function href(parts: string[], query?: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") q.set(k, v);
  const qs = q.toString();
  return `#/${parts.map(encodeURIComponent).join("/")}${qs ? `?${qs}` : ""}`;
}

/** Updates the hash without a navigation entry (e.g. to remember the terminal's session id). */
export function replaceHash(h: string): void {
  history.replaceState(null, "", h);
}
