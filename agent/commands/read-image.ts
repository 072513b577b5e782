// IMAGE arguments of the CLI: the file is read where it lies (lib/source/file-source.ts).
import { FileSource } from '../../lib/source/file-source.ts';
import { cannotReadImage } from '../../lib/errors.ts';

/** Opens the image file; the caller closes it. */
export function openImageFile(path: string): FileSource {
  try {
    return new FileSource(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw cannotReadImage(
      path,
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message,
      error,
    );
  }
}
