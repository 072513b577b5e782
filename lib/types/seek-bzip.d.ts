// seek-bzip 2.0.0 ships no types. Only what lib/formats/decompress.ts uses: its block-at-a-time
// decoder, driven as the package's own decode() and table() drive it.
declare module 'seek-bzip' {
  interface InputStream {
    readByte(): number;
    read(buffer: Uint8Array, offset: number, length: number): number;
    eof(): boolean;
  }
  interface OutputStream {
    writeByte(byte: number): void;
  }
  class Bunzip {
    constructor(input: InputStream, output: OutputStream);
    readonly reader: { read(bits: number): number };
    readonly streamCRC: number;
    /** false at the end of a stream. */
    _init_block(): boolean;
    _read_bunzip(): number;
    _start_bunzip(input: InputStream, output: OutputStream): void;
  }
  export default Bunzip;
}
