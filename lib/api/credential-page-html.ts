// The validation page's HTML (routes/credential-page.ts): plain server-rendered markup, one inline
// style block allowed by its nonce, no script. Kept apart so that the control panel can restyle it.
import type { AccessRule } from './credentials.ts';

const escape = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The validities a customer may pick, in seconds (null: unlimited). */
export const VALIDITIES: readonly {
  readonly value: string;
  readonly label: string;
  readonly seconds: number | null;
}[] = [
  { value: '3600', label: '1 hour', seconds: 3600 },
  { value: '86400', label: '1 day', seconds: 86400 },
  { value: '2592000', label: '30 days', seconds: 2592000 },
  { value: 'unlimited', label: 'Unlimited', seconds: null },
];

function layout(nonce: string, title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style nonce="${nonce}">body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}label{display:block;margin:.5rem 0}
.error{color:#a00;font-weight:bold}button{margin-right:1rem;padding:.4rem 1rem}</style>
</head><body>
<h1>${escape(title)}</h1>
${body}
</body></html>
`;
}

export interface ValidationForm {
  readonly nonce: string;
  readonly csrf: string;
  readonly credentialToken: string;
  readonly application: { readonly name: string; readonly description: string };
  readonly rules: readonly AccessRule[];
  readonly allowedIPs: readonly string[] | null;
  readonly redirection: string | null;
  readonly error?: string;
  readonly name?: string;
}

export function validationPage(form: ValidationForm): string {
  const rules = form.rules
    .map((r) => `<tr><td>${escape(r.method)}</td><td><code>${escape(r.path)}</code></td></tr>`)
    .join('\n');
  const ips = form.allowedIPs?.length
    ? `<p>Only from: ${form.allowedIPs.map((ip) => `<code>${escape(ip)}</code>`).join(', ')}</p>`
    : '';
  const validities = VALIDITIES.map(
    (v) => `<option value="${v.value}"${v.seconds === null ? ' selected' : ''}>${escape(v.label)}</option>`,
  ).join('');
  return layout(
    form.nonce,
    'Authorize an application',
    `<p>The application <strong>${escape(form.application.name)}</strong>${form.application.description ? ` (${escape(form.application.description)})` : ''} asks to act on your servers with these rights:</p>
<table><thead><tr><th>Method</th><th>Path</th></tr></thead><tbody>
${rules}
</tbody></table>
${ips}
${form.redirection ? `<p>Your browser then goes to <code>${escape(form.redirection)}</code>.</p>` : ''}
${form.error ? `<p class="error" role="alert">${escape(form.error)}</p>` : ''}
<form method="post" action="./">
<input type="hidden" name="credentialToken" value="${escape(form.credentialToken)}">
<input type="hidden" name="csrf" value="${escape(form.csrf)}">
<label>Account <input name="name" autocomplete="username" required value="${escape(form.name ?? '')}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label>Validity <select name="validity">${validities}</select></label>
<button type="submit" name="decision" value="grant">Authorize</button>
<button type="submit" name="decision" value="refuse">Refuse</button>
</form>`,
  );
}

export function messagePage(nonce: string, title: string, message: string): string {
  return layout(nonce, title, `<p>${escape(message)}</p>`);
}
