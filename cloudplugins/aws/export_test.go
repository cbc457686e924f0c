package aws

// CheckVolumes exposes checkVolumes to the package's external tests.
var CheckVolumes = (*Provider).checkVolumes

// KMSVolumeActions exposes the KMS actions the plugin's errors and the
// README's policy name.
var KMSVolumeActions = kmsVolumeActions
