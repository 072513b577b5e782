// Secrets (HTTP header values, URL credentials, query tokens) must never reach a log line, the
// status file or an error. Messages are built from redacted forms; `Redactor` is the second line
// of defence, scrubbing any text that might still carry one (a library's error message, say).

import { ByoiError, unexpectedError } from '../errors.ts';

/** The URL as it may be shown: no user or password, and query values hidden. */
export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return '<unparsable URL>';
  }
  if (url.username || url.password) {
    url.username = '***';
    url.password = '';
  }
  const params = [...url.searchParams.keys()];
  if (params.length > 0) url.search = params.map((key) => `${encodeURIComponent(key)}=***`).join('&');
  url.hash = '';
  return url.toString();
}

/** Secrets shorter than this are not scrubbed from text: replacing every "1" would garble logs. */
const MIN_SCRUBBED_LENGTH = 4;

export class Redactor {
  private readonly secrets: string[];

  constructor(secrets: Iterable<string>) {
    const forms = new Set<string>();
    for (const secret of secrets) {
      if (secret.length < MIN_SCRUBBED_LENGTH) continue;
      forms.add(secret);
      forms.add(JSON.stringify(secret).slice(1, -1)); // as it appears inside JSON
      forms.add(encodeURIComponent(secret)); // as it appears inside a URL
    }
    // Longest first, so a secret that contains another is replaced whole.
    this.secrets = [...forms].filter((s) => s.length >= MIN_SCRUBBED_LENGTH).sort((a, b) => b.length - a.length);
  }

  scrub(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join('***');
    return out;
  }

  /** Scrubs the secrets of both. */
  with(other: Redactor): Redactor {
    return new Redactor([...this.secrets, ...other.secrets]);
  }

  /** The error as it may be shown: secrets scrubbed, unexpected errors given a sentence. */
  visible(error: unknown): ByoiError {
    if (error instanceof ByoiError) {
      // The code stays; the cause does not: its words are not scrubbed.
      return new ByoiError(error.kind, error.code, this.scrub(error.message), {
        detail: error.detail === undefined ? undefined : this.scrub(error.detail),
      });
    }
    const text = error instanceof Error ? error.message : String(error);
    return unexpectedError(this.scrub(text), {
      detail: this.scrub(error instanceof Error ? (error.stack ?? text) : text),
    });
  }

  /** The secrets of a job, valid or not yet validated: header values and the URL's credentials and query values. */
  static forJob(job: { url?: unknown; httpHeaders?: Readonly<Record<string, unknown>> }): Redactor {
    const secrets = Object.values(job.httpHeaders ?? {}).filter((v): v is string => typeof v === 'string');
    if (typeof job.url === 'string' && URL.canParse(job.url)) {
      const url = new URL(job.url);
      secrets.push(url.username, url.password, safeDecode(url.username), safeDecode(url.password));
      for (const value of url.searchParams.values()) secrets.push(value);
    }
    return new Redactor(secrets);
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
