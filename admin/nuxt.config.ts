// DeepSpace Workflows — operator and finance console (admin).
// Offline-safe settings come from /work/shared/notes/nuxt-offline.md: no web fonts,
// icons bundled from @iconify-json/lucide and never fetched from the Iconify API.
export default defineNuxtConfig({
  compatibilityDate: '2026-11-01',
  modules: ['@nuxt/ui'],
  css: ['~/assets/css/main.css'],

  // A dashboard behind auth: render on the client only. The Nitro server still serves
  // the SPA shell and injects runtimeConfig at request time.
  ssr: false,

  telemetry: false,
  devtools: { enabled: false },

  app: {
    head: {
      title: 'DeepSpace Admin',
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

  // `nuxt dev` reads PORT/HOST itself; this is only the fallback.
  devServer: {
    port: Number(process.env.PORT ?? 3001),
    host: process.env.HOST ?? process.env.NITRO_HOST ?? '127.0.0.1'
  }
})
