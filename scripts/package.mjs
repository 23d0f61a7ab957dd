// `npm run package [-- linux-x64 darwin-arm64 …]`: one .vsix per target
// platform (vsce package --target), each with only that platform's ONNX
// Runtime (esbuild.mjs --target). Default: this machine's platform.
// Targets onnxruntime-node ships binaries for: linux-x64, linux-arm64,
// darwin-arm64, win32-x64, win32-arm64.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

const MAX_MB = 30;
const targets = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (targets.length === 0) targets.push(`${process.platform}-${process.arch}`);
const { name, version } = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync('package.json', 'utf8')));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
for (const target of targets) {
  run(process.execPath, ['esbuild.mjs', '--production', `--target=${target}`]);
  const out = `${name}-${target}-${version}.vsix`;
  run(process.execPath, ['node_modules/@vscode/vsce/vsce', 'package', '--no-dependencies', '--allow-missing-repository', '--no-rewrite-relative-links', '--target', target, '-o', out]);
  const mb = statSync(out).size / 1024 / 1024;
  process.stdout.write(`${out}: ${mb.toFixed(1)} MB\n`);
  if (mb > MAX_MB) {
    process.stderr.write(`${out} is over ${MAX_MB} MB\n`);
    process.exit(1);
  }
}
// Leave dist/ built for this machine again.
if (targets.some((t) => t !== `${process.platform}-${process.arch}`)) run(process.execPath, ['esbuild.mjs']);
