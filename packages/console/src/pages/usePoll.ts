import { useCallback, useEffect, useRef, useState } from "react";

/** Loads now and every `ms` while mounted (and the tab is visible); `reload()` refreshes at once. */
export function usePoll<T>(load: () => Promise<T>, ms = 2000): { data: T | undefined; error: string | undefined; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const loadRef = useRef(load);
  useEffect(() => {
    loadRef.current = load;
  });
  const run = useCallback(() => {
    loadRef.current().then(
      (d) => {
        setData(d);
        setError(undefined);
      },
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  }, []);
  useEffect(() => {
    run();
    const t = setInterval(() => {
      if (document.visibilityState !== "hidden") run();
    }, ms);
    return () => clearInterval(t);
  }, [run, ms]);
  return { data, error, reload: run };
}
