export default defineAppConfig({
  brand: {
    name: 'DeepSpace',
    product: 'Admin',
    icon: 'i-lucide-shield-check'
  },
  ui: {
    colors: {
      primary: 'violet',
      neutral: 'slate'
    }
  }
})
