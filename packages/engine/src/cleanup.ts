/**
 * A rollback stack: push an undo right after acquiring each resource; on failure, run them in
 * reverse. Undo steps must be idempotent and must not throw for "already gone". Errors from
 * undo steps are collected, never allowed to hide the original failure.
 */
export class Cleanup {
  #steps: Array<{ what: string; undo: () => Promise<unknown> | unknown }> = [];

  add(what: string, undo: () => Promise<unknown> | unknown): void {
    this.#steps.push({ what, undo });
  }

  /** Forget the steps: the resources now belong to whoever holds them. */
  release(): void {
    this.#steps = [];
  }

  async run(): Promise<Error[]> {
    const errors: Error[] = [];
    for (const step of this.#steps.reverse()) {
      try {
        await step.undo();
      } catch (err) {
        errors.push(new Error(`undo "${step.what}" failed: ${(err as Error).message}`, { cause: err }));
      }
    }
    this.#steps = [];
    return errors;
  }
}

/**
 * Runs `body` with a fresh {@link Cleanup}; if `body` throws, rolls back and rethrows the
 * original error (with any rollback failures attached as an AggregateError cause).
 */
export async function withRollback<T>(body: (cleanup: Cleanup) => Promise<T>): Promise<T> {
  const cleanup = new Cleanup();
  try {
    const result = await body(cleanup);
    cleanup.release();
    return result;
  } catch (err) {
    const undoErrors = await cleanup.run();
    if (undoErrors.length > 0 && err instanceof Error) {
      (err as Error & { rollbackErrors?: Error[] }).rollbackErrors = undoErrors;
    }
    throw err;
  }
}
