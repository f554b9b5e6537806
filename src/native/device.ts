// Choosing the compute device for a command (--device cpu|cuda|auto), shared by every command that
// takes one. The addon says whether CUDA was compiled in and whether a usable GPU is present
// (cudaInfo); a command says whether it has a CUDA path at all.
//   cpu   the CPU
//   cuda  the GPU, or a clear error: no usable device (with the reason), or this command has no CUDA
//         path in this build. Never a silent fall-back to the CPU.
//   auto  the GPU when usable and the command has a CUDA path; otherwise the CPU, with a one-line
//         notice saying why.
import { loadAddon, type CudaInfo } from './addon';

export type DeviceRequest = 'cpu' | 'cuda' | 'auto';
export type Device = 'cpu' | 'cuda';

export interface DeviceChoice {
  device: Device;
  /** One line for the user when auto chose the CPU although a GPU was asked about. */
  notice?: string;
}

export const DEVICE_REQUESTS: readonly DeviceRequest[] = ['cpu', 'cuda', 'auto'];

/** 'cpu' | 'cuda' | 'auto' (case-insensitive; 'gpu' and 'cuda:0' mean 'cuda'). */
export function parseDeviceRequest(value: string | undefined, fallback: DeviceRequest = 'cpu'): DeviceRequest {
  const v = (value ?? fallback).trim().toLowerCase();
  if (v === 'cpu' || v === 'auto' || v === 'cuda') return v;
  if (v === 'gpu' || v === 'cuda:0') return 'cuda';
  if (/^cuda:\d+$/.test(v)) throw new Error(`device "${value}": only one GPU (cuda or cuda:0) is supported`);
  throw new Error(`unknown device "${value}" (expected one of ${DEVICE_REQUESTS.join(', ')})`);
}

export interface ResolveOptions {
  /** What the command calls itself in messages, e.g. "training". */
  what: string;
  /** Whether this command has a CUDA implementation in this build. */
  cudaImplemented: boolean;
  /** For tests: the addon's answer (default: loadAddon().cudaInfo()). */
  info?: CudaInfo;
}

export function resolveDevice(request: DeviceRequest, opts: ResolveOptions): DeviceChoice {
  if (request === 'cpu') return { device: 'cpu' };
  const info = opts.info ?? loadAddon().cudaInfo();
  const gpu = info.available
    ? `${info.name ?? 'GPU'}${info.computeCapability ? ` (compute capability ${info.computeCapability})` : ''}` : '';
  if (request === 'cuda') {
    if (!info.available) throw new Error(`--device cuda: no usable CUDA device: ${info.reason ?? 'unknown reason'}`);
    if (!opts.cudaImplemented)
      throw new Error(`--device cuda: the CUDA ${opts.what} path is not implemented in this build (found ${gpu}); ` +
        `use --device cpu`);
    return { device: 'cuda' };
  }
  // auto
  if (!info.available) return { device: 'cpu', notice: `no usable GPU (${info.reason ?? 'unknown reason'}); using ` +
    `the CPU` };
  if (!opts.cudaImplemented)
    return { device: 'cpu', notice: `found ${gpu}, but the CUDA ${opts.what} path is not implemented in this build; ` +
      `using the CPU` };
  return { device: 'cuda' };
}
