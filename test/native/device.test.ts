// --device selection (src/native/device.ts) with the addon's answer injected, so every branch runs on
// any machine; plus one check against this machine's real answer.
import { parseDeviceRequest, resolveDevice } from '../../src/native/device';
import { addon } from '../helpers';
import type { CudaInfo } from '../../src/native/addon';

const noGpu: CudaInfo = { compiled: true, available: false, deviceCount: 0, buildOption: 'auto',
  reason: 'no CUDA driver (error 35)' };
const h200: CudaInfo = { compiled: true, available: true, deviceCount: 1, buildOption: 'on', name: 'NVIDIA H200',
  computeCapability: '9.0' };

describe('device selection', () => {
  test('parseDeviceRequest', () => {
    expect(parseDeviceRequest('CPU')).toBe('cpu');
    expect(parseDeviceRequest('gpu')).toBe('cuda');
    expect(parseDeviceRequest('cuda:0')).toBe('cuda');
    expect(parseDeviceRequest(undefined, 'auto')).toBe('auto');
    expect(() => parseDeviceRequest('cuda:1')).toThrow(/only one GPU/);
    expect(() => parseDeviceRequest('tpu')).toThrow(/unknown device "tpu" \(expected one of cpu, cuda, auto\)/);
  });

  test('cpu is always the CPU; auto without a GPU is the CPU with the reason', () => {
    expect(resolveDevice('cpu', { what: 'training', cudaImplemented: true, info: h200 })).toEqual({ device: 'cpu' });
    expect(resolveDevice('auto', { what: 'training', cudaImplemented: true, info: noGpu })).toEqual({
      device: 'cpu', notice: 'no usable GPU (no CUDA driver (error 35)); using the CPU',
    });
  });

  test('cuda without a GPU, or without a CUDA path, is an error, never a silent CPU run', () => {
    expect(() => resolveDevice('cuda', { what: 'training', cudaImplemented: true, info: noGpu }))
      .toThrow('--device cuda: no usable CUDA device: no CUDA driver (error 35)');
    expect(() => resolveDevice('cuda', { what: 'training', cudaImplemented: false, info: h200 }))
      .toThrow(new RegExp(String.raw`the CUDA training path is not implemented in this build \(found ` +
        String.raw`NVIDIA H200 \(compute capability 9.0\)\); use --device cpu`));
  });

  test('auto with a GPU: CUDA when the command has a CUDA path, else the CPU with a notice', () => {
    expect(resolveDevice('auto', { what: 'training', cudaImplemented: true, info: h200 })).toEqual({ device: 'cuda' });
    const c = resolveDevice('auto', { what: 'training', cudaImplemented: false, info: h200 });
    expect(c.device).toBe('cpu');
    expect(c.notice).toMatch(/found NVIDIA H200.*CUDA training path is not implemented.*using the CPU/);
  });

  test("this machine's answer", () => {
    const info = addon.cudaInfo();
    const c = resolveDevice('auto', { what: 'training', cudaImplemented: true });
    expect(c.device).toBe(info.available ? 'cuda' : 'cpu');
  });
});
