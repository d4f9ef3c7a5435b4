/**
 * Pure command-line helpers: which verb group a command line names, and how `vm exec` turns its
 * words into the shell command line the VM runs.
 * @module
 */

/** Global options that take a value (the word after them is not the verb). */
const VALUE_OPTIONS = new Set(["--api-url", "--api-key"]);

/** The group the command line names: its first word that is neither an option nor an option's value. */
export function groupOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    if (VALUE_OPTIONS.has(a)) i++;
    else if (a === "--") return undefined;
    else if (!a.startsWith("-")) return a;
  }
  return undefined;
}
