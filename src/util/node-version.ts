/**
 * Imported first by the package's entry point, before any module that loads the native SQLite
 * driver: on an older Node that load can crash the process with no message at all.
 */
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  throw new Error(`botstate needs Node.js 24 or newer; this is ${process.version}. Install Node 24 (or newer) and run with it.`);
}
export {};
