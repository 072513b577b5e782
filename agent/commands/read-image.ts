// IMAGE arguments of the CLI: read the whole file into RAM, as the deploy holds a download.
import { ChunkedBuffer } from '../../lib/chunked-buffer.ts';
import { cannotReadImage } from '../../lib/errors.ts';

export async function readImageFile(path: string): Promise<ChunkedBuffer> {
  try {
    return await ChunkedBuffer.fromFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw cannotReadImage(path, code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message);
  }
}
