// Hostnames as RFC 1123 allows them: dot-separated labels of letters, digits and hyphens,
// each 1-63 characters not starting or ending with a hyphen, 253 characters in all.

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;

/** Why `hostname` is not a valid RFC 1123 hostname or FQDN, or undefined when it is. */
export function hostnameProblem(hostname: string): string | undefined {
  if (hostname.length > 253) return `it is ${hostname.length} characters long, more than 253`;
  for (const label of hostname.split('.')) {
    if (label === '') return 'it has an empty label (two dots in a row, or a leading or trailing dot)';
    if (label.length > 63) return `the label "${label.slice(0, 20)}…" is longer than 63 characters`;
    if (!LABEL.test(label)) {
      return /^-|-$/.test(label) && /^[A-Za-z0-9-]+$/.test(label)
        ? `the label "${label}" starts or ends with a hyphen`
        : `the label "${label}" has characters other than letters, digits and hyphens`;
    }
  }
  return undefined;
}
