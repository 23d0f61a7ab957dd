/**
 * Training kernels that @tensorflow/tfjs-backend-wasm lacks or runs slowly,
 * registered for the 'wasm' backend. Implemented in the sibling modules.
 */
export function registerWasmTrainingKernels(): void {
  // Filled in by the kernels work (issue 2): see kernels/*.ts.
}
