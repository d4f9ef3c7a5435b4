/** Claude Code on Capsule: the offline snapshot builder and the Agent SDK spawner. @module */
export { buildClaudeSnapshot, claudeCodeCacheDir, claudeJson, claudeSnapshotName, ensureClaudeCodeBinary, CLAUDE_CODE_PACKAGE, DEFAULT_CLAUDE_CODE_VERSION } from "./snapshot.js";
export type { ClaudeSnapshot, ClaudeSnapshotOptions } from "./snapshot.js";
export { claudeCodeSpawner, claudeEnv } from "./spawner.js";
export type { ClaudeCodeSpawnerOptions, ClaudeSpawnedProcess, ClaudeSpawnOptions } from "./spawner.js";
