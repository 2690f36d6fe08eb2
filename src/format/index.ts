// The format layer's public surface: import from '../format', not from its files.
export * from './errors';
export * from './dtypes';
export * from './source';
export * from './model';
export * from './header';
export * from './reader';
export * from './openModel';
export * from './readers';
export * from './storage';
export * from './httpOpener';
export * from './decode';
export * from './writer';
export * from './outputs';
export * from './cast';
