/**
 * What every benchmark here shares: its command line (`--json`, numeric flags), timing one call,
 * and nearest-rank quantiles of the samples.
 */

/** The bench's flags: `--json` and `--name N` numbers. */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): { asJson: boolean; num(name: string, dflt: number): number } {
  return {
    asJson: argv.includes("--json"),
    num(name, dflt) {
      const i = argv.indexOf(name);
      return i >= 0 ? Number(argv[i + 1]) : dflt;
    },
  };
}

/** The nearest-rank `p` quantile (0 to 1) of the samples; NaN for none. */
export function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))] ?? NaN;
}

/** Milliseconds `fn` took. */
export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}
