// Module hook: the Observatory's scanner imports this stand-in instead of its network
// retriever; every other module of the package is its own.
export async function resolve(specifier, context, next) {
  if (specifier.endsWith("/retriever/retriever.js") && context.parentURL?.includes("/scanner/")) {
    return { url: new URL("./retriever-stub.mjs", import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
