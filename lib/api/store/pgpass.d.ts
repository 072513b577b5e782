// pgpass (node-postgres' reader of libpq password files) ships no types.
declare module 'pgpass' {
  function pgPass(
    settings: { host?: string; port?: number; database?: string; user?: string },
    done: (password: string | undefined) => void,
  ): void;
  export default pgPass;
}
