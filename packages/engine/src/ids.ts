import crypto from "node:crypto";

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A random id of lowercase letters and digits (VM, snapshot and layer ids). */
export function newId(len = 12): string {
  const bytes = crypto.randomBytes(len);
  let out = "";
  for (const b of bytes) out += ID_ALPHABET[b % ID_ALPHABET.length];
  return out;
}
