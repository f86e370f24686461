// Output ports of an activity for a config, derived as the server derives them
// (apps/activities/*.py `output_ports`); the server re-validates every saved graph.

export function outputPorts(type, config, described) {
  const c = config && typeof config === "object" ? config : {};
  const list = (items, key) => (Array.isArray(items) ? items : [])
    .map((item) => item && typeof item === "object" ? item[key] : null)
    .filter((port) => typeof port === "string" && port !== "");
  switch (type) {
    case "split": {
      const codes = [];
      if (c.holdout && typeof c.holdout === "object") codes.push(c.holdout.code || "holdout");
      codes.push(...list(c.subsets, "code"));
      const ports = c.single_output ? ["out"] : codes;
      return c.complement ? [...ports, "complement"] : ports;
    }
    case "fork":
      return list(c.branches, "port");
    case "test":
      return [...list(c.conditions, "port"), c.default_port || "default"];
    case "combine":
      return c.complement && ["intersection", "exclusion"].includes(c.operation) ? ["out", "complement"] : ["out"];
    case "dedup":
      return c.complement ? ["out", "complement"] : ["out"];
    case "reconciliation":
      return (c.unmatched || "output") === "output" ? ["out", "unmatched"] : ["out"];
    case "end":
      return [];
    default:
      return described ? [...described.outputs] : ["out"];
  }
}

/** A config with the values a new activity needs to be well-formed (required enums, lists). */
export function initialConfig(schema) {
  const config = {};
  const properties = (schema && schema.properties) || {};
  for (const name of (schema && schema.required) || []) {
    const prop = properties[name] || {};
    if (prop.enum) config[name] = prop.enum[0];
    else if (prop.type === "array") config[name] = [];
    else if (prop.type === "object" && !prop.oneOf) config[name] = initialConfig(prop);
  }
  return config;
}
