/**
 * The PyTorch peer of benchTrain.ts: ../shared/bench/torch_small_cnn.py run
 * by Debian's python3, its wall-clock and CPU-time images/s.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Runs the torch script unchanged, with its clock observed: the wrapper
 * records the process CPU time at each time.perf_counter() call, so the timed
 * section's CPU time (the last two calls: start and end of the 3 timed
 * epochs) is reported next to the script's own wall-clock figure.
 */
const TORCH_WRAPPER = `
import runpy, sys, time
marks = []
wall_clock = time.perf_counter
def observed():
    marks.append(time.process_time())
    return wall_clock()
time.perf_counter = observed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
print(f"cpu_images_per_s={3 * int(sys.argv[2]) / (marks[-1] - marks[-2]):.1f}")
`;

export interface TorchResult {
  wall: number;
  cpu: number;
}

/** The PyTorch peer's images/s, or undefined (with the reason printed). */
export function runTorch(script: string, images: number, threads = 1): TorchResult | undefined {
  const run = spawnSync('/usr/bin/python3', ['-c', TORCH_WRAPPER, script, String(threads), String(images)], { encoding: 'utf8' });
  if (run.error || run.status !== 0) {
    if (/No module named 'torch'/.test(run.stderr ?? '')) {
      console.log('PyTorch is not installed; to compare with it: apt-get update && apt-get install -y python3-torch (as root)');
    } else {
      const why = run.error ? run.error.message : (run.stderr ?? '').trim().split('\n').pop();
      console.log(`the torch benchmark failed: ${why}`);
    }
    return undefined;
  }
  const wall = /images_per_s=([\d.]+)/.exec(run.stdout);
  const cpu = /cpu_images_per_s=([\d.]+)/.exec(run.stdout);
  if (!wall || !cpu) {
    console.log(`the torch benchmark printed no images_per_s: ${run.stdout.trim()}`);
    return undefined;
  }
  return { wall: Number(wall[1]), cpu: Number(cpu[1]) };
}

export function torchScript(): string | undefined {
  // The repo is checked out next to the shared folder: <root>/main, <root>/shared.
  const script = path.resolve(__dirname, '..', '..', 'shared', 'bench', 'torch_small_cnn.py');
  if (fs.existsSync(script)) return script;
  console.log(`\n--torch: ${script} not found (expected ../shared/bench/torch_small_cnn.py relative to the repo); skipped`);
  return undefined;
}

export function torchVersion(): string | undefined {
  const run = spawnSync('/usr/bin/python3', ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return run.status === 0 ? run.stdout.trim() : undefined;
}
