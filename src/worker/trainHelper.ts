/**
 * A training helper: a worker_threads entry started by the engine's
 * data-parallel training (src/engine/train/parallel.ts), one per extra
 * thread. It holds a replica of the model being trained and answers the
 * ReplicaApi (src/protocol/trainReplica.ts) over the rpc helper: `init`
 * builds the replica, each `step` returns the gradients of its share of a
 * batch. The engine terminates it when training ends, fails or is cancelled.
 */
import { parentPort } from 'node:worker_threads';
import { EngineError, messageOf } from '../engine/errors';
import { Replica } from '../engine/train/replica';
import { isRpcMessage, RpcServer, type Handlers, type Port, type RpcError } from '../protocol/rpc';
import type { ReplicaApi } from '../protocol/trainReplica';

const port = parentPort;
if (!port) throw new Error('trainHelper.js must run in a worker thread');

let replica: Replica | undefined;

const handlers: Handlers<ReplicaApi> = {
  init: async (params) => {
    replica?.dispose();
    replica = await Replica.create(params);
    return replica.layout;
  },
  step: (params, ctx) => {
    if (!replica) throw new EngineError('internal', 'the training helper got a step before its model.');
    const result = replica.step(params);
    ctx.transfer([...result.grads, ...result.statistics].map((a) => a.buffer as ArrayBuffer));
    return result;
  },
};

function toError(e: unknown): RpcError {
  if (e instanceof EngineError) return { code: e.code, message: e.message };
  return { code: 'internal', message: messageOf(e) };
}

const rpcPort: Port = { post: (m, transfer) => port.postMessage(m, transfer ?? []) };
const server = new RpcServer<ReplicaApi>(rpcPort, handlers, toError);
port.on('message', (m: unknown) => {
  if (isRpcMessage(m)) void server.handle(m);
});
