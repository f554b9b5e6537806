// attention kernels (native/kernels/cpu).

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface AttentionKernels {}
