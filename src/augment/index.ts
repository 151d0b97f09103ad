// AutoAugment with torchvision's semantics: the pixel ops, the policy tables, the seeded policy
// application, byte-level helpers and the shard stage. See ops.ts for where and why the float32
// arithmetic is repeated step by step.

export * from './ops.js';
export * from './policies.js';
export * from './autoaugment.js';
export * from './stage.js';
