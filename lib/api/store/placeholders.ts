// The store writes `?` placeholders (sql.ts); PostgreSQL numbers its own: `$1`, `$2`, ... A `?` inside
// a string literal, a quoted identifier or a comment is text, not a placeholder, and stays as it is.

/** `sql` with each placeholder `?` replaced by `$n` in order, and how many there were. */
export function numberPlaceholders(sql: string): { text: string; count: number } {
  let text = '';
  let count = 0;
  let i = 0;
  while (i < sql.length) {
    const char = sql[i]!;
    const skipTo = skippedUntil(sql, i);
    if (skipTo > i) {
      text += sql.slice(i, skipTo);
      i = skipTo;
    } else if (char === '?') {
      text += `$${++count}`;
      i++;
    } else {
      text += char;
      i++;
    }
  }
  return { text, count };
}

/** Where the literal, quoted identifier or comment starting at `i` ends (`i` when none starts there). */
function skippedUntil(sql: string, i: number): number {
  const char = sql[i];
  if (char === "'" || char === '"') {
    // A doubled quote is an escaped quote inside the same literal.
    let j = i + 1;
    while (j < sql.length) {
      if (sql[j] === char) {
        if (sql[j + 1] === char) j += 2;
        else return j + 1;
      } else j++;
    }
    return sql.length;
  }
  if (char === '-' && sql[i + 1] === '-') {
    const end = sql.indexOf('\n', i);
    return end === -1 ? sql.length : end + 1;
  }
  if (char === '/' && sql[i + 1] === '*') {
    const end = sql.indexOf('*/', i + 2);
    return end === -1 ? sql.length : end + 2;
  }
  return i;
}
