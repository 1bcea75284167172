import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Options } from 'tsup'
import config from '../../tsup.config.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export interface InstalledProject {
  dir: string
  /** Runs a CommonJS script (as Medusa's own code is) in the project; resolves with its stdout. */
  run(script: string): Promise<string>
}

export interface Packaged {
  /** herald as an app installs it: built files, package.json and its dependencies, nothing else. */
  bare: InstalledProject
  /** The same, plus `@medusajs/*` beside it, as in a Medusa project. */
  medusa: InstalledProject
  remove(): Promise<void>
}

/**
 * Builds herald with the project's tsup configuration (JavaScript only) into a throwaway
 * `node_modules/herald`, so tests load `herald/medusa` through its package `exports` with
 * Node's own `require`, the way Medusa's loader does.
 */
export async function installPackaged(): Promise<Packaged> {
  const base = await mkdtemp(join(tmpdir(), 'herald-medusa-'))
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>
  }
  const built = join(base, 'herald')
  const options = {
    ...(config as Options),
    outDir: join(built, 'dist'),
    dts: false,
    sourcemap: false,
    silent: true,
  }
  options.entry = Object.fromEntries(
    Object.entries(options.entry as Record<string, string>).map(([name, file]) => [name, join(ROOT, file)]),
  )
  await build(options)
  await cp(join(ROOT, 'package.json'), join(built, 'package.json'))
  // Its dependencies sit in its own node_modules, found from its real path as npm would nest them.
  for (const dependency of Object.keys(pkg.dependencies ?? {})) {
    const target = join(built, 'node_modules', dependency)
    await mkdir(dirname(target), { recursive: true })
    await symlink(join(ROOT, 'node_modules', dependency), target, 'dir')
  }

  const project = async (name: string, withMedusa: boolean): Promise<InstalledProject> => {
    const dir = join(base, name)
    const modules = join(dir, 'node_modules')
    await mkdir(modules, { recursive: true })
    await symlink(built, join(modules, 'herald'), 'dir')
    if (withMedusa) await symlink(join(ROOT, 'node_modules', '@medusajs'), join(modules, '@medusajs'), 'dir')
    return {
      dir,
      run: async (script) => {
        const file = join(dir, `script-${Math.random().toString(36).slice(2)}.cjs`)
        await writeFile(file, script)
        return new Promise((resolvePromise, reject) => {
          execFile(
            process.execPath,
            [file],
            { cwd: dir, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } },
            (error, stdout, stderr) => {
              if (error) reject(new Error(`${error.message}\n${stderr}`))
              else resolvePromise(stdout)
            },
          )
        })
      },
    }
  }

  return {
    bare: await project('bare', false),
    medusa: await project('medusa-app', true),
    remove: () => rm(base, { recursive: true, force: true }),
  }
}
