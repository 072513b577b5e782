// The job's efiBootloaderPath: a file inside the EFI system partition, as the firmware names it.
import { badLoaderPath } from '../errors.ts';

/** Absolute, / or \ separated, no empty, dot or dot-dot parts; returned in backslash form (\EFI\debian\shimx64.efi). */
export function normaliseLoaderPath(path: string): string {
  const parts = path.split(/[\\/]/);
  if (parts[0] !== '' || parts.length < 2 || path.length > 255) throw badLoaderPath(path);
  const names = parts.slice(1);
  if (names.some((n) => n === '' || n === '.' || n === '..' || /[\u0000-\u001f"*:<>?|]/.test(n)))
    throw badLoaderPath(path);
  return `\\${names.join('\\')}`;
}
