/** Shell quoting, checked against the real shells: what `/bin/sh -c` (and bash) read back must be the words quoted. */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { shellJoin, shq } from "../src/shell.js";

const SHELLS = ["/bin/sh", "/bin/bash"].filter((s) => fs.existsSync(s));

/** The words `shell -c "printf '%s\0' <line>"` prints, i.e. the argv the shell built from `line`. */
function argvSeenBy(shell: string, line: string): string[] {
  const out = execFileSync(shell, ["-c", `printf '%s\\0' ${line}`], { encoding: "utf8", maxBuffer: 16 << 20 });
  return out.split("\0").slice(0, -1);
}

const TRICKY = [
  "",
  " ",
  "  two  spaces  ",
  "'",
  "''",
  '"',
  "it's",
  "it's!",
  "a b",
  "!",
  "!!",
  "!$",
  "a!b",
  "'!'",
  "$HOME",
  "${HOME}",
  "$(id)",
  "`id`",
  "\\",
  "\\\\",
  "\\n",
  "\\$",
  "\n",
  "a\nb",
  "trailing\n",
  "\r\n",
  "\t",
  "\v\f",
  "~",
  "~root",
  "~/x",
  "a~b",
  "*",
  "?",
  "[a-z]",
  "{a,b}",
  "#",
  "#not a comment",
  "a#b",
  "-n",
  "-e",
  "--",
  ";",
  "&&",
  "||",
  "|",
  "&",
  ">",
  "<",
  ">&2",
  "2>&1",
  "=",
  "A=b",
  "%s",
  "%%",
  "é",
  "日本語",
  "😀",
  "\u00a0nbsp",
  "\u2028\u2029",
  "\x7f",
  "\x1b[31mred\x1b[0m",
  "C:\\path",
  "a'b\"c$d`e\\f!g h\ni",
];

/** Every character 1..255 on its own, and all of them in one word. */
const BYTES = Array.from({ length: 255 }, (_, i) => String.fromCharCode(i + 1));

/** Deterministic pseudo-random words over ASCII 1..127 plus a few multi-byte characters. */
function fuzzWords(n: number, seed = 42): string[] {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const pool = [...Array.from({ length: 127 }, (_, i) => String.fromCharCode(i + 1)), "é", "日", "😀", "\u00a0"];
  return Array.from({ length: n }, () => Array.from({ length: Math.floor(next() * 12) }, () => pool[Math.floor(next() * pool.length)]).join(""));
}

describe("shell quoting (shell-quote)", () => {
  for (const shell of SHELLS) {
    it(`${shell} reads shellJoin(words) back as exactly the words`, () => {
      for (const words of [TRICKY, BYTES, [BYTES.join("")], fuzzWords(400)]) assert.deepEqual(argvSeenBy(shell, shellJoin(words)), words);
    });

    it(`${shell} reads each shq(word) back as one word, also with text glued after it`, () => {
      const words = [...TRICKY, ...BYTES];
      assert.deepEqual(argvSeenBy(shell, words.map(shq).join(" ")), words);
      assert.deepEqual(argvSeenBy(shell, words.map((w) => `${shq(w)}/suffix`).join(" ")), words.map((w) => `${w}/suffix`));
      const assigned = execFileSync(shell, ["-c", words.map((w) => `A=${shq(w)}; printf '%s\\0' "$A"`).join("; ")], { encoding: "utf8" });
      assert.deepEqual(assigned.split("\0").slice(0, -1), words, "as the value of an assignment");
    });
  }

  it("the empty word survives; a lone word keeps spaces; `!` never lands in double quotes", () => {
    assert.equal(shq(""), "''");
    assert.equal(shellJoin(["printf", "%s|", "one two", "three"]), "printf %s\\| 'one two' three");
    // shell-quote before 1.12 put `!` inside double quotes as `\!`, which sh reads back with the backslash.
    assert.deepEqual(["it's!", "a b!", "!x", "~x"].map(shq), [`'it'"'"'s!'`, "'a b!'", "\\!x", "\\~x"]);
  });

  it("a NUL byte, which no argv can carry, is refused instead of silently cutting the word", () => {
    assert.throws(() => shq("a\0b"), TypeError);
    assert.throws(() => shellJoin(["ok", "\0"]), TypeError);
  });
});
