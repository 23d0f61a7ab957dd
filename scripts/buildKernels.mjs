// Compiles Layer Lens's SIMD training kernels (src/engine/kernels/assembly,
// AssemblyScript) to dist/layerlens-kernels.wasm. Called by esbuild.mjs on
// every build, and by src/engine/kernels/simd.ts when code runs from source
// (tests, scripts) and the binary is missing or older than its source.
//
// The flags make a module that imports tfjs-backend-wasm's memory and owns no
// memory of its own: no runtime (stub), no data segments (checked below), no
// abort import, release optimisation with SIMD.
//
// Usage: node scripts/buildKernels.mjs [out.wasm]
import asc from 'assemblyscript/asc';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const KERNEL_SOURCE = join(root, 'src/engine/kernels/assembly/index.ts');

export async function buildKernels(outFile = join(root, 'dist/layerlens-kernels.wasm')) {
  let binary;
  const stderr = [];
  const { error } = await asc.main(
    [KERNEL_SOURCE, '--outFile', 'kernels.wasm', '-O3', '--enable', 'simd', '--runtime', 'stub',
      '--importMemory', '--noExportMemory', '--noAssert', '--use', 'abort=', '--initialMemory', '0'],
    {
      writeFile: (name, contents) => { if (name.endsWith('.wasm')) binary = contents; },
      stderr: { write: (s) => stderr.push(String(s)) },
      stdout: { write: () => {} },
    },
  );
  if (error || !binary) throw new Error(`the SIMD kernels did not compile: ${error?.message ?? 'no output'}\n${stderr.join('')}`);
  const module = new WebAssembly.Module(binary);
  const imports = WebAssembly.Module.imports(module);
  if (imports.length !== 1 || imports[0].kind !== 'memory') {
    throw new Error(`the SIMD kernels must import only the memory, got ${JSON.stringify(imports)}`);
  }
  if (WebAssembly.Module.customSections(module, 'data').length > 0 || hasDataSection(binary)) {
    throw new Error('the SIMD kernels must not carry data segments: they would overwrite the tfjs heap');
  }
  mkdirSync(dirname(outFile), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  writeFileSync(tmp, binary);
  renameSync(tmp, outFile);
  return outFile;
}

/** Whether the binary has a data section (id 11): walk the section headers. */
function hasDataSection(bytes) {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at++];
    let size = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[at++];
      size |= (b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    if (id === 11) return true;
    at += size;
  }
  return false;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildKernels(process.argv[2]).then(
    (f) => process.stdout.write(`${f}\n`),
    (e) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    },
  );
}
