// DeepSpace shell layer: what the web (researcher) and admin (operator) apps share.
// web extends it as './layers/shell', admin as '../web/layers/shell'; each app keeps only
// its sections, pages, app.config.ts (brand), head title and dev port.
// Offline-safe settings come from /work/shared/notes/nuxt-offline.md: no web fonts,
// icons bundled from @iconify-json/lucide and never fetched from the Iconify API.
import { fileURLToPath } from 'node:url'

export default defineNuxtConfig({
  compatibilityDate: '2026-11-01',
  modules: ['@nuxt/ui'],
  // An absolute path: `~` in a layer's config would point at the extending app, not here.
  css: [fileURLToPath(new URL('./app/assets/css/main.css', import.meta.url))],

  // A dashboard behind auth: render on the client only. The Nitro server still serves
  // the SPA shell and injects runtimeConfig at request time.
  ssr: false,

  telemetry: false,
  devtools: { enabled: false },

  app: {
    head: {
      // Each app sets its own `title`; each app's public/ has its own favicon.svg.
      link: [{ rel: 'icon', type: 'image/svg+xml', href: '/favicon.svg' }]
    }
  },

  runtimeConfig: {
    public: {
      // Overridden at run time by NUXT_PUBLIC_GATEWAY_URL.
      gatewayUrl: 'http://127.0.0.1:8080'
    }
  },

  ui: { fonts: false },
  icon: {
    provider: 'server',
    serverBundle: { collections: ['lucide'] },
    clientBundle: { scan: true },
    fallbackToApi: false
  },

  // `nuxt dev` reads PORT/HOST itself; this is only the fallback (each app sets its port).
  devServer: {
    host: process.env.HOST ?? process.env.NITRO_HOST ?? '127.0.0.1'
  }
})
