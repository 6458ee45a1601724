// The one shape every dynamic provider here has: each method loads a handlers module at call time and
// forwards to it with the resource kind. The closure captures only two strings (kind and the module's
// absolute path), so nothing heavy or secret is serialized into the state's `__provider` input.
// `require` (Node >= 22.12 loads ES modules with it), not `import()`: the serialized code runs as
// CommonJS in the dynamic-provider process, and test runners rewrite `import()` into helpers that
// cannot be serialized.
import type * as pulumi from "@pulumi/pulumi";

export function handlerProvider(handlersPath: string, kind: string): pulumi.dynamic.ResourceProvider {
  return {
    async check(_olds, news) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      return h.check(kind, news);
    },
    async diff(_id, olds, news) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      return h.diff(kind, olds, news);
    },
    async create(inputs) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      return h.create(kind, inputs);
    },
    async read(id, props) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      return h.read(kind, id, props);
    },
    async update(id, olds, news) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      return h.update(kind, id, olds, news);
    },
    async delete(id, props) {
      const h = require(handlersPath); // eslint-disable-line @typescript-eslint/no-require-imports
      await h.remove(kind, id, props);
    },
  };
}
