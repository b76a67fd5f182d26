// Loaded with `node --import`: resolves the host's imports
// (`gatehouse:host/http@0.1.0`, `gatehouse:host/log@0.1.0`) to test/host.js,
// so the tests run the connector's own source natively.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('gatehouse:host/')) {
    return { url: ${JSON.stringify(new URL('./host.js', import.meta.url).href)}, shortCircuit: true };
  }
  return next(specifier, context);
}`),
);
