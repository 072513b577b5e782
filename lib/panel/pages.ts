// The control panel's pages: small typed functions over the escaping template (html.ts).
import { checksumTypes, imageTypes } from '../job.ts';
import type { KnownDiskGroups } from './disk-groups.ts';
import { html, type Html, type Part } from './html.ts';
import type { Messages } from './i18n.ts';
import { MAX_ROWS, type FieldName, type InstallForm, type KeyValue } from './install-form.ts';
import type { FollowView, ServerState } from './follow.ts';

/** What every page knows: the words, where it is, and the signed-in customer's session if any. */
export interface PageContext {
  readonly t: Messages;
  /** This page's path, for the language switch to come back to. */
  readonly path: string;
  readonly customer?: string;
  readonly csrfToken?: string;
}

const csrfField = (token: string | undefined) => html`<input type="hidden" name="csrf" value="${token ?? ''}">`;

export function layout(c: PageContext, title: string, main: Part): Html {
  const { t } = c;
  const back = encodeURIComponent(c.path);
  return html`<!doctype html>
<html lang="${t.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${t.appName}</title>
<link rel="stylesheet" href="/panel/static/panel.css">
<script src="/panel/static/panel.js" defer></script>
</head>
<body>
<a class="skip" href="#main">${t.skipToContent}</a>
<header>
<a class="brand" href="/panel/servers">${t.appName}</a>
<nav aria-label="${t.language}">
<a href="/panel/language/en?back=${back}" lang="en" hreflang="en"${t.lang === 'en' ? html` aria-current="true"` : ''}>English</a>
<a href="/panel/language/fr?back=${back}" lang="fr" hreflang="fr"${t.lang === 'fr' ? html` aria-current="true"` : ''}>Français</a>
</nav>
${
  c.customer &&
  html`<form method="post" action="/panel/sign-out" class="sign-out">${csrfField(c.csrfToken)}<span>${t.signedInAs(c.customer)}</span> <button type="submit">${t.signOut}</button></form>`
}
</header>
<main id="main">
<h1>${title}</h1>
${main}
</main>
</body>
</html>
`;
}

export function signInPage(c: PageContext, preToken: string, error: string | undefined, name = ''): Html {
  const { t } = c;
  return layout(
    c,
    t.signIn,
    html`${error && html`<p class="error" role="alert" id="sign-in-error">${error}</p>`}
<form method="post" action="/panel/sign-in" class="stack">
${csrfField(preToken)}
<label for="name">${t.accountName}</label>
<input id="name" name="name" autocomplete="username" required maxlength="64" value="${name}"${error ? html` aria-describedby="sign-in-error"` : ''}>
<label for="password">${t.password}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">${t.signIn}</button>
</form>`,
  );
}

export function stateText(t: Messages, state: ServerState): string {
  switch (state.kind) {
    case 'idle':
      return t.idle;
    case 'deploying':
      return t.deployingPhase(state.phase, state.percent);
    case 'done':
      return t.done;
    case 'error':
      return t.error;
    case 'cancelled':
      return t.cancelled;
  }
}

export function serversPage(c: PageContext, servers: readonly { name: string; state: ServerState }[]): Html {
  const { t } = c;
  const rows = servers.map(
    (s) =>
      html`<tr><th scope="row"><a href="/panel/servers/${encodeURIComponent(s.name)}">${s.name}</a></th><td class="state-${s.state.kind}">${stateText(t, s.state)}</td></tr>`,
  );
  return layout(
    c,
    t.servers,
    servers.length === 0
      ? html`<p>${t.noServers}</p>`
      : html`<table><thead><tr><th scope="col">${t.server}</th><th scope="col">${t.state}</th></tr></thead><tbody>${rows}</tbody></table>`,
  );
}

function diskGroupList(t: Messages, known: KnownDiskGroups): Html {
  if (known.source === 'unknown') return html`<p>${t.diskGroupsUnknown}</p>`;
  return html`<p>${known.source === 'reported' ? t.diskGroupsReported(known.reportedAt) : t.diskGroupsDeclared}</p>
<ul id="disk-groups">${known.groups.map((g) => html`<li>${g.id}: ${g.description}${g.disks.length > 0 && html` (${t.disks}: ${g.disks.join(', ')})`}</li>`)}</ul>`;
}

export function serverPage(
  c: PageContext,
  name: string,
  groups: KnownDiskGroups,
  state: ServerState,
  hasDeployment: boolean,
): Html {
  const { t } = c;
  const path = `/panel/servers/${encodeURIComponent(name)}`;
  return layout(
    c,
    name,
    html`<section aria-labelledby="groups"><h2 id="groups">${t.diskGroups}</h2>${diskGroupList(t, groups)}</section>
<section aria-labelledby="current"><h2 id="current">${t.currentDeployment}</h2>
${
  hasDeployment
    ? html`<p><span class="state-${state.kind}" id="server-state">${stateText(t, state)}</span> · <a href="${path}/deployment">${t.follow}</a></p>
${state.kind !== 'cancelled' && html`<p><a class="button danger" href="${path}/delete">${t.deleteInstall}</a></p>`}`
    : html`<p>${t.noDeployment}</p>`
}
</section>
<p><a class="button" href="${path}/install">${t.install}</a></p>
<p><a href="/panel/servers">${t.allServers}</a></p>`,
  );
}

type Errors = Partial<Record<FieldName | 'form', string>>;

/** One labelled input, with its error (the API's message) right after it and tied to it. */
function field(id: FieldName, label: string, control: (attrs: Html) => Html, errors: Errors, hint?: string): Html {
  const error = errors[id];
  const describedBy = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ');
  const attrs = html`id="${id}" name="${id}"${describedBy && html` aria-describedby="${describedBy}"`}${error && html` aria-invalid="true"`}`;
  return html`<div class="field${error ? ' invalid' : ''}">
<label for="${id}">${label}</label>
${hint && html`<p class="hint" id="${id}-hint">${hint}</p>`}
${control(attrs)}
${error && html`<p class="error" id="${id}-error">${error}</p>`}
</div>`;
}

function keyValueRows(
  prefix: 'httpHeader' | 'userMetadatas',
  rows: readonly KeyValue[],
  keyLabel: (n: number) => string,
  valueLabel: (n: number) => string,
  secret: boolean,
): Html {
  const shown = [...rows.slice(0, MAX_ROWS)];
  while (shown.length < Math.min(MAX_ROWS, rows.length + 2)) shown.push({ key: '', value: '' });
  return html`<div class="rows" data-max="${MAX_ROWS}">${shown.map(
    (row, i) => html`<div class="row">
<label for="${prefix}.${i}.key">${keyLabel(i + 1)}</label><input id="${prefix}.${i}.key" name="${prefix}.${i}.key" value="${row.key}" maxlength="256" autocomplete="off">
<label for="${prefix}.${i}.value">${valueLabel(i + 1)}</label><input id="${prefix}.${i}.value" name="${prefix}.${i}.value" ${secret ? html`type="password" value="" autocomplete="new-password"` : html`value="${row.value}" autocomplete="off"`} maxlength="8192">
</div>`,
  )}</div>`;
}

const addRow = (t: Messages) => html`<button type="button" class="add-row" hidden>${t.addRow}</button>`;

const option = (value: string, label: string, selected: string) =>
  html`<option value="${value}"${value === selected ? html` selected` : ''}>${label}</option>`;

export function installPage(
  c: PageContext,
  name: string,
  groups: KnownDiskGroups,
  form: InstallForm,
  errors: Errors,
): Html {
  const { t } = c;
  const path = `/panel/servers/${encodeURIComponent(name)}`;
  const groupChoices: [string, string][] =
    groups.source !== 'unknown'
      ? [
          ...groups.groups.map((g): [string, string] => [String(g.id), `${g.id}: ${g.description}`]),
          ['0', t.diskGroupAutomatic],
        ]
      : [
          ['1', t.diskGroupDefault],
          ['0', t.diskGroupAutomatic],
        ];
  if (!groupChoices.some(([v]) => v === form.diskGroupId)) groupChoices.push([form.diskGroupId, form.diskGroupId]);
  const headerError = errors.httpHeader;
  const metadataError = errors.userMetadatas;
  return layout(
    c,
    t.install,
    html`<p class="warning" role="note"><strong>${t.eraseWarning}</strong></p>
${errors.form && html`<p class="error" role="alert">${errors.form}</p>`}
<form method="post" action="${path}/install" enctype="multipart/form-data" class="stack" novalidate>
${csrfField(c.csrfToken)}
<fieldset><legend>${t.image}</legend>
${field('URL', t.url, (a) => html`<input ${a} type="text" inputmode="url" value="${form.URL}" maxlength="4096" autocomplete="off" spellcheck="false">`, errors)}
${field('type', t.type, (a) => html`<select ${a}>${imageTypes.map((v) => option(v, v, form.type))}</select>`, errors)}
${field('checkSumType', t.checkSumType, (a) => html`<select ${a}>${option('', t.none, form.checkSumType)}${checksumTypes.map((v) => option(v, v, form.checkSumType))}</select>`, errors)}
${field('checkSum', t.checkSum, (a) => html`<input ${a} value="${form.checkSum}" maxlength="256" autocomplete="off" spellcheck="false">`, errors)}
${field('description', t.description, (a) => html`<input ${a} value="${form.description}" maxlength="1024">`, errors)}
${field('diskGroupId', t.diskGroupId, (a) => html`<select ${a}>${groupChoices.map(([v, label]) => option(v, label, form.diskGroupId))}</select>`, errors, groups.source === 'unknown' ? t.diskGroupsUnknown : undefined)}
</fieldset>
<fieldset${headerError && html` aria-describedby="httpHeader-error"`}><legend>${t.httpHeaders}</legend>
${keyValueRows('httpHeader', form.httpHeader, t.headerName, t.headerValue, true)}${addRow(t)}
${headerError && html`<p class="error" id="httpHeader-error">${headerError}</p>`}
</fieldset>
<fieldset><legend>${t.configDrive}</legend>
<div class="check"><input type="checkbox" id="configdrive" name="configdrive"${form.configdrive ? html` checked` : ''}><label for="configdrive">${t.enableConfigDrive}</label></div>
${field('hostname', t.hostname, (a) => html`<input ${a} value="${form.hostname}" maxlength="255" autocomplete="off" spellcheck="false">`, errors)}
${field('sshKey', t.sshKey, (a) => html`<textarea ${a} rows="3" spellcheck="false">${form.sshKey}</textarea>`, errors)}
${field('userData', t.userData, (a) => html`<textarea ${a} rows="6" spellcheck="false"></textarea>`, errors, t.secretsNotShown)}
<div class="field"><label for="userDataFile">${t.userDataFile}</label><input type="file" id="userDataFile" name="userDataFile"></div>
<fieldset class="inner"${metadataError && html` aria-describedby="userMetadatas-error"`}><legend>${t.metadata}</legend>
${keyValueRows('userMetadatas', form.userMetadatas, t.metadataKey, t.metadataValue, false)}${addRow(t)}
${metadataError && html`<p class="error" id="userMetadatas-error">${metadataError}</p>`}
</fieldset>
</fieldset>
<button type="submit">${t.review}</button>
</form>
<p><a href="${path}">${t.back}</a></p>`,
  );
}

export function confirmPage(
  c: PageContext,
  name: string,
  form: InstallForm,
  userDataBytes: number,
  error?: string,
): Html {
  const { t } = c;
  const path = `/panel/servers/${encodeURIComponent(name)}`;
  const sshKeys = form.sshKey.split('\n').filter((l) => l.trim() !== '').length;
  const item = (label: string, value: Part) => html`<dt>${label}</dt><dd>${value}</dd>`;
  return layout(
    c,
    t.confirmTitle,
    html`<p class="warning" role="note"><strong>${t.eraseWarning}</strong></p>
<p>${t.confirmWhat(name)}</p>
${error && html`<p class="error" role="alert">${error}</p>`}
<dl class="summary">
${item(t.url, html`<code>${form.URL}</code>`)}
${item(t.type, form.type)}
${item(t.checkSum, form.checkSum === '' ? t.none : html`${form.checkSumType} <code>${form.checkSum}</code>`)}
${form.description !== '' && item(t.description, form.description)}
${item(t.diskGroupId, form.diskGroupId)}
${form.httpHeader.length > 0 && item(t.httpHeaders, html`<ul>${form.httpHeader.map((h) => html`<li>${h.key}: (${t.hidden})</li>`)}</ul>`)}
${item(
  t.configDrive,
  form.configdrive
    ? html`<ul>
${form.hostname !== '' && html`<li>${t.hostname}: ${form.hostname}</li>`}
${sshKeys > 0 && html`<li>${t.sshKey}: ${t.sshKeys(sshKeys)}</li>`}
${userDataBytes > 0 && html`<li>${t.userData}: ${t.bytesHidden(userDataBytes)}</li>`}
${form.userMetadatas.map((m) => html`<li>${t.metadata}: ${m.key} = ${m.value}</li>`)}
</ul>`
    : t.disabled,
)}
</dl>
<form method="post" action="${path}/install/confirm" class="actions">
${csrfField(c.csrfToken)}
<button type="submit" class="danger">${t.confirmInstall}</button>
</form>
<p><a href="${path}/install">${t.edit}</a> · <a href="${path}">${t.cancel}</a></p>`,
  );
}

export function followPage(c: PageContext, name: string, view: FollowView): Html {
  const { t } = c;
  const path = `/panel/servers/${encodeURIComponent(name)}`;
  return layout(
    c,
    `${t.deployment}: ${name}`,
    html`<div id="follow" data-source="${path}/deployment.json" data-live="${String(view.live)}">
<dl class="summary">
<dt>${t.state}</dt><dd id="state" aria-live="polite" class="state-${view.state.kind}">${stateText(t, view.state)}</dd>
<dt>${t.phase}</dt><dd id="phase">${view.phase ?? ''}</dd>
<dt>${t.progress}</dt><dd><progress id="bar" max="100"${view.percent !== null ? html` value="${view.percent}"` : ''} aria-label="${t.progress}">${view.percent ?? ''} %</progress> <span id="percent">${view.percent === null ? '' : `${view.percent} %`}</span></dd>
<dt>${t.rate}</dt><dd id="rate">${view.rate ?? ''}</dd>
<dt>${t.eta}</dt><dd id="eta">${view.eta ?? ''}</dd>
<dt>${t.message}</dt><dd id="message" aria-live="polite">${view.message ?? ''}</dd>
<dt id="detail-label"${view.detail === null ? html` hidden` : ''}>${t.detail}</dt><dd id="detail"${view.detail === null ? html` hidden` : ''}>${view.detail ?? ''}</dd>
</dl>
<h2>${t.steps}</h2>
<ol id="steps">${view.steps.map((s) => html`<li class="step-${s.status}">${s.comment}${s.error && html`: ${s.error}`}</li>`)}</ol>
</div>
<p><a href="${path}">${t.back}</a></p>`,
  );
}

export function deletePage(c: PageContext, name: string): Html {
  const { t } = c;
  const path = `/panel/servers/${encodeURIComponent(name)}`;
  return layout(
    c,
    t.deleteInstall,
    html`<p>${t.deleteWhat(name)}</p>
<form method="post" action="${path}/delete" class="actions">
${csrfField(c.csrfToken)}
<button type="submit" class="danger">${t.confirmDelete}</button>
</form>
<p><a href="${path}">${t.cancel}</a></p>`,
  );
}

export function messagePage(c: PageContext, title: string, text: string): Html {
  return layout(c, title, html`<p role="alert">${text}</p><p><a href="/panel/servers">${c.t.allServers}</a></p>`);
}
