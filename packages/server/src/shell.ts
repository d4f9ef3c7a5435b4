/** The shell-convention status of a process that died of a signal: 128 + its number. */
export function statusFromExit(exitCode: number | null, signal: string | null, signals: Record<string, number>): number | null {
  if (exitCode !== null) return exitCode;
  const n = signal ? signals[signal] : undefined;
  return n === undefined ? null : 128 + n;
}
