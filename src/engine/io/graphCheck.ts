/**
 * Checks of a layers topology that tfjs itself cannot be trusted with, shared
 * by model.json (model.ts) and Keras files (keras.ts): a functional graph
 * whose rebuild would loop for ever, and tfjs's errors put in one short line.
 */
import { clipText as clip } from './files';

/** Why tfjs failed, in one short line: its first line, or what a stack overflow or a TypeError from inside it means. */
export function libraryReason(e: unknown): string {
  if (e instanceof RangeError && /call stack/i.test(e.message)) return 'its layer graph is too deep for tfjs to build: the call stack overflowed';
  // A TypeError from inside tfjs ("Cannot read properties of undefined") means a field it needs is missing or of the wrong type.
  if (e instanceof TypeError) return 'the topology is malformed: a field tfjs needs is missing or has the wrong type';
  const first = (e instanceof Error ? e.message : String(e))
    .split('\n')[0]
    .replace(/\[object Object\]/g, 'an object')
    .replace(/function (\w*)\(\) \{ \[native code\] \}/g, '"$1"');
  return clip(first, 200);
}

/**
 * tfjs rebuilds a functional model by calling each layer on its inbound nodes,
 * re-queueing a call whose input does not exist yet, in a loop that ends only
 * when every call has been made: a call whose input never comes into
 * existence (an inbound_nodes entry naming a missing layer, or node 3 of a
 * layer that is called once) loops for ever, synchronously, so nothing else
 * in the worker runs. This replays tfjs's loop on the JSON, counting nodes
 * only, and names the first call that can never be made. Where tfjs would
 * throw instead (a malformed entry), it stops and lets tfjs say so.
 */
export function findUnresolvableCall(topology: unknown, depth = 0): string | undefined {
  const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (depth > 200 || !isRecord(topology)) return undefined;
  const config = isRecord(topology['model_config']) ? topology['model_config']['config'] : topology['config'];
  if (!isRecord(config) || !Array.isArray(config['layers'])) return undefined;
  const layers = config['layers'] as unknown[];
  for (const l of layers) {
    const inner = findUnresolvableCall(l, depth + 1);
    if (inner) return inner;
  }
  if (!layers.every((l) => isRecord(l) && Array.isArray(l['inbound_nodes']) && isRecord(l['config']))) return undefined; // Sequential, or tfjs throws
  type Entry = { name: string; nodes: number };
  // Plain objects keyed as tfjs keys them, so that `in` behaves as it does there.
  const created: Record<string, Entry> = {};
  const queue: Record<string, unknown[][]> = {};
  let auto = 0;
  for (const l of layers as Record<string, unknown>[]) {
    const cfg = l['config'] as Record<string, unknown>;
    const name = cfg['name'] === undefined || cfg['name'] === null ? `\u0000auto${auto++}` : String(cfg['name']);
    // An input layer, or a nested functional model, holds one node from the start.
    const nodes = l['class_name'] === 'InputLayer' || Array.isArray(cfg['layers']) ? 1 : 0;
    created[String(l['name'])] = { name, nodes };
    for (const nodeData of l['inbound_nodes'] as unknown[]) {
      if (!Array.isArray(nodeData)) return undefined;
      (queue[name] ??= []).push(nodeData);
    }
  }
  while (Object.keys(queue).length > 0) {
    let progress = false;
    let stuck: string | undefined;
    for (const l of layers as Record<string, unknown>[]) {
      const layer = created[String(l['name'])];
      if (!Object.prototype.hasOwnProperty.call(queue, layer.name)) {
        if (layer.name in queue) return undefined; // an inherited key: tfjs throws
        continue;
      }
      const calls = queue[layer.name];
      delete queue[layer.name];
      for (const nodeData of calls) {
        let waiting: string | undefined;
        for (const input of nodeData) {
          // tfjs reads input[0] and input[1] whatever input is: a string's first characters, a number's undefined.
          if (input === null || input === undefined) return undefined; // tfjs throws
          const from = (input as Record<number, unknown>)[0];
          const index = (input as Record<number, unknown>)[1];
          const key = String(from);
          if (!(key in created)) waiting = typeof from === 'string' ? `layer "${clip(key)}", which the model does not have` : `${clip(JSON.stringify(input) ?? String(input), 60)}, which names no layer`;
          else if (!Object.prototype.hasOwnProperty.call(created, key)) return undefined;
          else if (created[key].nodes <= (index as number)) waiting = `call ${String(index)} of layer "${clip(key)}", which is ${created[key].nodes === 0 ? 'never called' : `called only ${created[key].nodes} time${created[key].nodes === 1 ? '' : 's'}`}`;
          // tfjs then reads inboundNodes[index]: a node when index is "0", "1"... below the count, else it throws.
          else if (!(/^(0|[1-9]\d*)$/.test(String(index)) && Number(index) < created[key].nodes)) return undefined;
          if (waiting) break;
        }
        if (waiting) {
          (queue[layer.name] ??= []).push(nodeData);
          stuck ??= `layer "${clip(layer.name)}" takes its input from ${waiting}`;
        } else {
          progress = true;
          if (nodeData.length > 0) layer.nodes++;
        }
      }
    }
    if (!progress) {
      // Calls queued under a name that no listed layer has (its config names it otherwise) are never made either.
      const orphan = Object.keys(queue)[0];
      return stuck ?? `layer "${clip(orphan)}" is never called: no layer in the list goes by that name (two layers share a name, or one's config renames it)`;
    }
  }
  return undefined;
}
