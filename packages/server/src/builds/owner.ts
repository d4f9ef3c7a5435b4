/**
 * The owner label of a builder VM: the build's id, whose row exists before the VM does. After a
 * restart every VM with this label is a builder of a build that can no longer finish.
 * @module
 */
const PREFIX = "build:";

export function buildOwner(buildId: string): string {
  return `${PREFIX}${buildId}`;
}

export function isBuildOwner(owner: string | undefined): boolean {
  return owner?.startsWith(PREFIX) ?? false;
}
