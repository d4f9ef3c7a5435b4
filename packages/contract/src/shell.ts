/**
 * Shell quoting for the command lines Capsule hands to `/bin/sh -c` in a VM: the one helper the
 * server, the SDK and the CLI use. Backed by `shell-quote`'s `quote` (1.12+, which keeps `!` out of
 * double quotes and escapes a leading `~`); test/shell.unit.test.ts round-trips every byte,
 * empty words, newlines and unicode through the real `/bin/sh` and `bash`.
 * @module
 */
import { quote } from "shell-quote";

function checked(word: string): string {
  // A NUL cannot reach sh (argv strings end at NUL): the word would be cut short, silently.
  if (word.includes("\0")) throw new TypeError(`a shell word cannot contain a NUL byte: ${JSON.stringify(word)}`);
  return word;
}

/** One word, quoted so that `/bin/sh` reads it back as exactly this string (`''` for the empty one). */
export function shq(word: string): string {
  return quote([checked(word)]);
}

/** An argv as one `/bin/sh -c` command line: the shell runs exactly these words, none expanded. */
export function shellJoin(argv: readonly string[]): string {
  return quote(argv.map(checked));
}
