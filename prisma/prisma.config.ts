// Prisma CLI configuration. Migrations are plain SQL in ./migrations (Prisma's folder format),
// applied offline by core/src/db/migrate.ts; `prisma migrate deploy` works on the same files
// where Prisma's schema-engine binary can be downloaded.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'schema.prisma',
  migrations: { path: 'migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/deepspace' },
});
