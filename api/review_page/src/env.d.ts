// esbuild bundles the CSS that main.ts imports; TypeScript only needs to know it exists.
declare module "*.css";
