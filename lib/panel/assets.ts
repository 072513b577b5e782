// The panel's only script and style sheet, served as files from /panel/static/ (the CSP allows
// scripts and styles from the panel itself only, nothing inline). Kept as strings here so that the
// bundled byoi (scripts/bundle.ts) carries them.

/** Polls the follow page's JSON while the deployment runs; adds name/value rows to the install form. */
export const panelScript = `'use strict';
(function () {
  function follow(root) {
    var source = root.getAttribute('data-source');
    function text(id, value) {
      var node = document.getElementById(id);
      if (node) node.textContent = value === null || value === undefined ? '' : String(value);
    }
    function show(view) {
      var state = document.getElementById('state');
      state.className = 'state-' + view.state.kind;
      text('state', view.stateText);
      text('phase', view.phase);
      var bar = document.getElementById('bar');
      if (view.percent === null) bar.removeAttribute('value'); else bar.value = view.percent;
      text('percent', view.percent === null ? '' : view.percent + ' %');
      text('rate', view.rate);
      text('eta', view.eta);
      text('message', view.message);
      text('detail', view.detail);
      ['detail-label', 'detail'].forEach(function (id) { document.getElementById(id).hidden = view.detail === null; });
      var list = document.getElementById('steps');
      list.textContent = '';
      view.steps.forEach(function (step) {
        var item = document.createElement('li');
        item.className = 'step-' + step.status;
        item.textContent = step.comment + (step.error ? ': ' + step.error : '');
        list.appendChild(item);
      });
      return view.live;
    }
    function poll() {
      fetch(source, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (response) { if (!response.ok) throw new Error(String(response.status)); return response.json(); })
        .then(function (view) { if (show(view)) setTimeout(poll, 1000); })
        .catch(function () { setTimeout(poll, 5000); });
    }
    setTimeout(poll, 1000);
  }

  function rows(button) {
    var box = button.previousElementSibling;
    var max = Number(box.getAttribute('data-max'));
    button.hidden = false;
    button.addEventListener('click', function () {
      var all = box.querySelectorAll('.row');
      var n = all.length;
      if (n >= max) return;
      var row = all[n - 1].cloneNode(true);
      row.querySelectorAll('label, input').forEach(function (node) {
        ['for', 'id', 'name'].forEach(function (attribute) {
          var value = node.getAttribute(attribute);
          if (value) node.setAttribute(attribute, value.replace('.' + (n - 1) + '.', '.' + n + '.'));
        });
        if (node.tagName === 'INPUT') node.value = '';
        else node.textContent = node.textContent.replace(String(n), String(n + 1));
      });
      box.appendChild(row);
      row.querySelector('input').focus();
      if (n + 1 >= max) button.hidden = true;
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    var root = document.getElementById('follow');
    if (root && root.getAttribute('data-live') === 'true') follow(root);
    document.querySelectorAll('button.add-row').forEach(rows);
  });
})();
`;

export const panelStyle = `:root { font-family: system-ui, sans-serif; line-height: 1.5; color: #1b1b1b; background: #fff; }
body { margin: 0; }
header { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: center; padding: 0.75rem 1rem; background: #00185e; color: #fff; }
header a { color: #fff; }
.brand { font-weight: bold; text-decoration: none; margin-right: auto; }
header nav a { margin-right: 0.75rem; }
header nav a[aria-current] { font-weight: bold; }
.sign-out { display: flex; gap: 0.5rem; align-items: center; }
main { max-width: 48rem; margin: 0 auto; padding: 1rem; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: #fff; color: #000; padding: 0.5rem; z-index: 1; }
a:focus, button:focus, input:focus, select:focus, textarea:focus { outline: 3px solid #ffbf47; outline-offset: 1px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.4rem 0.5rem; border-bottom: 1px solid #ccc; }
.stack { display: flex; flex-direction: column; gap: 0.75rem; }
fieldset { border: 1px solid #bbb; padding: 0.75rem; display: flex; flex-direction: column; gap: 0.75rem; }
.field { display: flex; flex-direction: column; gap: 0.25rem; }
label { font-weight: 600; }
input, select, textarea, button { font: inherit; padding: 0.4rem; max-width: 100%; box-sizing: border-box; }
input:not([type=checkbox]), select, textarea { width: 100%; border: 1px solid #555; }
.check { display: flex; gap: 0.5rem; align-items: center; }
.row { display: grid; grid-template-columns: 1fr; gap: 0.25rem; padding-bottom: 0.5rem; border-bottom: 1px dashed #ccc; }
@media (min-width: 40rem) { .row { grid-template-columns: auto 1fr auto 1fr; align-items: center; } }
.hint { margin: 0; color: #444; font-size: 0.9rem; }
.error { color: #b00020; font-weight: 600; margin: 0; }
.invalid input, .invalid select, .invalid textarea { border: 2px solid #b00020; }
.warning { background: #fff4e5; border-left: 4px solid #e65100; padding: 0.75rem; }
button, .button { background: #0050d7; color: #fff; border: 0; border-radius: 4px; padding: 0.5rem 1rem; cursor: pointer; text-decoration: none; display: inline-block; }
header button { background: #fff; color: #00185e; }
.danger { background: #b00020; }
.actions { display: inline-block; margin-right: 0.5rem; }
.summary { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
.summary dd { margin: 0; overflow-wrap: anywhere; }
progress { width: 12rem; max-width: 60%; }
.state-error, .step-error { color: #b00020; }
.state-done, .step-done { color: #1b5e20; }
.state-cancelled { color: #5f4b00; }
code { overflow-wrap: anywhere; }
`;
