import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { describeContributions } from '../../models/index.ts';
import { openBundle } from '../shared.ts';

/** `rtml inspect <bundle>`: print a bundle's model, input schema, outputs and policy as JSON. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description("print a bundle's model, input schema and outputs as JSON")
    .argument('<bundle>', 'bundle directory')
    .action(async (dir: string) => {
      const bundle = await openBundle(dir, loadBundle);
      const description = {
        name: bundle.name,
        version: bundle.version,
        model: bundle.model ? { format: bundle.model.format, ...bundle.model.info, contributions: describeContributions(bundle.model) } : null,
        features: bundle.encoding.features,
        model_columns: bundle.encoding.columns,
        outputs: bundle.outputs ? { ...bundle.manifest.outputs, columns: bundle.outputs.columns } : null,
        policy: bundle.policy ? { version: bundle.policy.version, actions: bundle.policy.actions, reason_codes: bundle.policy.reasonCodes } : null,
        golden: bundle.goldenPath !== null,
      };
      process.stdout.write(JSON.stringify(description, null, 2) + '\n');
      await bundle.model?.close?.();
    });
}
