/** Exact decimal arithmetic: lib/decimal.ts (the operator prices with it too). */
export * from '../lib/decimal.ts';
