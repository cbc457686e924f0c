package manifests

// KubeadmKubeconfigs are the kubeconfigs kubeadm writes on a control-plane
// node, in its kubeconfig directory (/etc/kubernetes).
var KubeadmKubeconfigs = []string{"admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"}

// LocalKubeconfigs are those kubeadm points at the node's own
// kube-apiserver (its LocalAPIEndpoint) on a control-plane node of an HA
// cluster: kube-controller-manager's and kube-scheduler's. admin.conf,
// super-admin.conf and kubelet.conf name the control-plane endpoint.
var LocalKubeconfigs = []string{"controller-manager.conf", "scheduler.conf"}
