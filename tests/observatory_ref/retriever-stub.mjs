// What the scanner's retrieve(hostname) returns: the responses grade.mjs built.
export async function retrieve() {
  return globalThis.__bastionRequests;
}
