#!/usr/bin/env node
// Launcher for the trainer CLI (arrives with the trainer issue).
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/filip.ts');
