/**
 * Ids in chunks of exactly `size`, the last one padded with its last id repeated: an IN list of
 * a fixed number of placeholders is one statement text, prepared once.
 */
export function paddedChunks(ids: readonly string[], size: number): string[][] {
  const chunks: string[][] = [];
  for (let start = 0; start < ids.length; start += size) {
    const chunk = ids.slice(start, start + size);
    while (chunk.length < size) chunk.push(chunk[chunk.length - 1]!);
    chunks.push(chunk);
  }
  return chunks;
}
