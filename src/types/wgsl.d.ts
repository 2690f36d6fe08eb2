// WGSL sources are bundled as text by esbuild's `text` loader (see esbuild.mjs).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
